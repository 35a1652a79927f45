"""The file watcher that runs inside a workspace (as the workspace user, through the agent): inotify on every folder
of the workspace, changes coalesced per path into batches, written to stdout for ide_backend.service.watch.

It is sent as `perl -e WATCH_SCRIPT ROOT MAX_FOLDERS BATCH_MS MAX_BATCH VERSION_BYTES`, so every image with Perl (all
of ours: the agent is Perl) can watch without carrying a program of its own. inotify is reached by raw syscalls
(x86_64 and aarch64), since no inotify module ships with Perl itself.

Output: records of five NUL-terminated fields, `KIND TYPE PATH FROM VERSION`, paths relative to ROOT:

    R  -  <folders watched>  -  -       ready: every folder is watched (sent once, after the first walk)
    C  f|d|l|o  path  -  version        created            (TYPE: file, dir, symlink, other)
    M  f|...    path  -  version        modified
    D  f|...    path  -  -              deleted
    V  f|...    path  from  version     moved from FROM to PATH (both inside ROOT)
    O  -  reason  -  -                  overflow: this batch lost changes; re-list (reason: too_many, queue, limit)
    B  -  -  -  -                       the end of a batch

A batch collects what happened within BATCH_MS of its first event (5 x BATCH_MS right after a batch of more than
MAX_BATCH / 10 paths, so a burst comes in few batches), one change per path: created then written is created,
created then deleted is nothing, a file deleted then created is modified (a folder: created, since what is in it is
new), a move of a file made in the same batch is its creation at the new name, and what happened below a folder
created or deleted in the same batch is left out (the folder's own change says it; list it for what is inside).
More than MAX_BATCH paths in one batch become one `O too_many`. VERSION (sha256 hex) is given for regular files up
to VERSION_BYTES, at most 64 per batch, else `-`.

Not watched: ROOT/.ide-staging (the backend's staged writes, whose moves into place show as changes at their
targets), the inside of every `.git` folder, and the writer's temporary files (`.ide-write.*`). At most MAX_FOLDERS
folders are watched (the kernel's fs.inotify.max_user_watches, shared by every container of the workspace user, may
stop it sooner): past that, one `O limit` per batch says that changes in some folders are not seen. When the
kernel's event queue overflows, `O queue`, and every folder is walked again.
"""

from __future__ import annotations

WATCH_SCRIPT = r"""
# ide-watch: the workspace's file watcher (ide_backend/service/watch_script.py)
use strict;
use warnings;
use Config;
use Digest::SHA;
use Fcntl qw(S_ISDIR S_ISREG S_ISLNK O_RDONLY O_NOFOLLOW O_NONBLOCK);
use IO::Select;
use Time::HiRes qw(time);
$SIG{PIPE} = 'DEFAULT';
binmode(STDOUT);
my ($root, $max_folders, $batch_ms, $max_batch, $version_bytes) = @ARGV;
die "usage: ROOT MAX_FOLDERS BATCH_MS MAX_BATCH VERSION_BYTES\n" unless defined $version_bytes;
my %nr = $Config{archname} =~ /^x86_64/ ? (init => 294, add => 254, rm => 255)
       : $Config{archname} =~ /^aarch64/ ? (init => 26, add => 27, rm => 28)
       : die "inotify: unsupported architecture $Config{archname}\n";
use constant {
    MODIFY => 0x2, CLOSE_WRITE => 0x8, MOVED_FROM => 0x40, MOVED_TO => 0x80, CREATE => 0x100, DELETE => 0x200,
    Q_OVERFLOW => 0x4000, IGNORED => 0x8000, ISDIR => 0x40000000,
};
my $MASK = MODIFY | CLOSE_WRITE | MOVED_FROM | MOVED_TO | CREATE | DELETE | 0x01000000 | 0x02000000 | 0x04000000;
my $fd = syscall($nr{init}, 0x800 | 0x80000);    # IN_NONBLOCK | IN_CLOEXEC
die "inotify_init1: $!\n" if $fd < 0;
open(my $ino, "<&=", $fd) or die "inotify fd: $!\n";
binmode($ino);

my (%dir_of, %wd_of, %known);    # wd -> folder (relative, "" = ROOT); folder -> wd; path -> type (f d l o)
my (%change, @order, %moved_from, $overflow, $batch_start);
my $limit_hit = 0;
my $window = $batch_ms;    # longer while busy: the batch before carried many paths

sub ignored_name { my ($rel, $name) = @_; return $name =~ /^\.ide-write\./ || ($rel eq "" && $name eq ".ide-staging"); }
sub join_path { my ($dir, $name) = @_; return $dir eq "" ? $name : "$dir/$name"; }
sub type_of { my ($mode) = @_; return S_ISDIR($mode) ? "d" : S_ISLNK($mode) ? "l" : S_ISREG($mode) ? "f" : "o"; }
sub inside_git { my ($rel) = @_; return $rel =~ m{(?:^|/)\.git$}; }

# Watch a folder and everything below it (watch first, then read it, so nothing made meanwhile is missed).
sub watch_tree {
    my ($rel) = @_;
    my @todo = ($rel);
    while (defined(my $dir = shift @todo)) {
        next if inside_git($dir);
        if (!exists $wd_of{$dir}) {
            if (keys(%dir_of) >= $max_folders) { $limit_hit = 1; next; }
            my $abs = $dir eq "" ? $root : "$root/$dir";
            my $wd = syscall($nr{add}, $fd, $abs, $MASK);
            if ($wd < 0) { $limit_hit = 1 if $!{ENOSPC}; next; }
            $dir_of{$wd} = $dir;
            $wd_of{$dir} = $wd;
        }
        opendir(my $dh, $dir eq "" ? $root : "$root/$dir") or next;
        for my $name (readdir($dh)) {
            next if $name eq "." || $name eq ".." || ignored_name($dir, $name);
            my $path = join_path($dir, $name);
            my @st = lstat($dir eq "" ? "$root/$name" : "$root/$dir/$name") or next;
            $known{$path} = type_of($st[2]);
            push @todo, $path if S_ISDIR($st[2]);
        }
        closedir($dh);
    }
}

# Forget a folder's watches and what was known below it (it was deleted or moved out).
sub forget_below {
    my ($rel) = @_;
    for my $dir (grep { $_ eq $rel || index($_, "$rel/") == 0 } keys %wd_of) {
        my $wd = delete $wd_of{$dir};
        delete $dir_of{$wd};
        syscall($nr{rm}, $fd, $wd);
    }
    delete $known{$_} for grep { index($_, "$rel/") == 0 } keys %known;
}

# A folder moved inside ROOT: its watches and what is known below it follow it.
sub rename_below {
    my ($from, $to) = @_;
    for my $dir (grep { $_ eq $from || index($_, "$from/") == 0 } keys %wd_of) {
        my $new = $to . substr($dir, length $from);
        my $wd = delete $wd_of{$dir};
        $wd_of{$new} = $wd;
        $dir_of{$wd} = $new;
    }
    for my $path (grep { index($_, "$from/") == 0 } keys %known) {
        $known{$to . substr($path, length $from)} = delete $known{$path};
    }
}

sub note {
    my ($path, $kind, $type, $from) = @_;
    $batch_start //= time;
    my $prev = $change{$path};
    if (!$prev) {
        if (keys(%change) >= 4 * $max_batch) { $overflow //= "too_many"; return; }
        push @order, $path;
        $change{$path} = [$kind, $type, $from];
        return;
    }
    my $was = $prev->[0];
    if ($kind eq "C") { $change{$path} = [$was eq "D" && $type ne "d" ? "M" : "C", $type, undef] }
    elsif ($kind eq "M") { $prev->[1] = $type }
    elsif ($kind eq "D") {
        if ($was eq "C") { delete $change{$path} }
        elsif ($was eq "V") { delete $change{$path}; note($prev->[2], "D", $type) }
        else { $change{$path} = ["D", $type, undef] }
    } elsif ($kind eq "V") { $change{$path} = ["V", $type, $from] }
}

sub moved {
    my ($from, $to, $type, $existed) = @_;
    my $prev = $change{$from};
    if ($prev && $prev->[0] eq "C") {    # made in this batch: it is a creation at its new name
        delete $change{$from};
        note($to, $existed ? "M" : "C", $type);
    } else {
        my $origin = $prev && $prev->[0] eq "V" ? $prev->[2] : $from;
        delete $change{$from} if $prev;
        note($to, "V", $type, $origin);
    }
}

sub handle {
    my ($wd, $mask, $cookie, $name) = @_;
    if ($mask & Q_OVERFLOW) { $overflow = "queue"; $batch_start //= time; %known = (); watch_tree(""); return; }
    my $dir = $dir_of{$wd};
    if ($mask & IGNORED) { if (defined $dir) { delete $wd_of{$dir}; delete $dir_of{$wd}; } return; }
    return unless defined $dir && $name ne "" && !ignored_name($dir, $name);
    my $path = join_path($dir, $name);
    my $isdir = $mask & ISDIR;
    if ($mask & (CREATE | MOVED_TO)) {
        my @st = lstat("$root/$path");
        my $type = @st ? type_of($st[2]) : $isdir ? "d" : "f";
        my $existed = exists $known{$path};
        if (($mask & MOVED_TO) && $cookie && exists $moved_from{$cookie}) {
            my ($from, $ftype) = @{ delete $moved_from{$cookie} };
            rename_below($from, $path) if $ftype eq "d";
            delete $known{$from};
            $known{$path} = $type;
            moved($from, $path, $type, $existed);
        } else {
            $known{$path} = $type;
            note($path, $existed && !$isdir ? "M" : "C", $type);
            watch_tree($path) if $type eq "d";
        }
    } elsif ($mask & (MODIFY | CLOSE_WRITE)) {
        note($path, "M", $known{$path} // "f") unless $isdir;
    } elsif ($mask & DELETE) {
        my $type = delete $known{$path} // ($isdir ? "d" : "f");
        forget_below($path) if $type eq "d";
        note($path, "D", $type);
    } elsif ($mask & MOVED_FROM) {
        $moved_from{$cookie} = [$path, $known{$path} // ($isdir ? "d" : "f")];
        $batch_start //= time;
    }
}

sub version_of {
    my ($path) = @_;
    sysopen(my $fh, "$root/$path", O_RDONLY | O_NOFOLLOW | O_NONBLOCK) or return "-";
    my @st = stat($fh);
    return "-" unless @st && S_ISREG($st[2]) && $st[7] <= $version_bytes;
    my $sha = Digest::SHA->new(256);
    $sha->addfile($fh);
    return $sha->hexdigest;
}

sub flush {
    for my $cookie (keys %moved_from) {    # moved out of ROOT (or to a place not watched): gone from here
        my ($from, $type) = @{ delete $moved_from{$cookie} };
        forget_below($from) if $type eq "d";
        delete $known{$from};
        note($from, "D", $type);
    }
    my @paths = grep { exists $change{$_} } @order;
    my %seen;
    @paths = grep { !$seen{$_}++ } @paths;
    my %whole = map { $_ => 1 } grep { $change{$_}[1] eq "d" && $change{$_}[0] =~ /^[CD]$/ } @paths;
    if (%whole) {    # inside a folder made or removed in this batch: the folder's change says it
        @paths = grep {
            my ($p, $keep) = ($_, 1);
            while ($p =~ s{/[^/]*$}{}) { if ($whole{$p}) { $keep = 0; last } }
            $keep;
        } @paths;
    }
    my $out = "";
    $overflow //= "too_many" if @paths > $max_batch;
    if (defined $overflow) {
        $out .= join("\0", "O", "-", $overflow, "-", "-") . "\0";
    } else {
        my $hashed = 0;
        for my $path (@paths) {
            my ($kind, $type, $from) = @{ $change{$path} };
            my $version = "-";
            if ($kind ne "D" && $type eq "f" && $hashed < 64) { $version = version_of($path); $hashed++; }
            $out .= join("\0", $kind, $type, $path, $from // "-", $version) . "\0";
        }
    }
    $out .= join("\0", "O", "-", "limit", "-", "-") . "\0" if $limit_hit;
    $out .= join("\0", "B", "-", "-", "-", "-") . "\0";
    syswrite(STDOUT, $out) // exit 0;
    $window = @paths >= $max_batch / 10 ? 5 * $batch_ms : $batch_ms;
    %change = ();
    @order = ();
    ($overflow, $batch_start, $limit_hit) = (undef, undef, 0);
}

# One watcher per workspace: one left by a backend that died without stopping it is ended here (found by its pid
# file, and only if that process is a watcher: its command line holds this script).
my $pidfile = $ENV{IDE_WATCH_PIDFILE} || "/tmp/.ide-watch.pid";    # another: a watcher that is not the backend's
if (open(my $fh, "<", $pidfile)) {
    my ($old) = (<$fh> // "") =~ /^(\d+)$/;
    close $fh;
    if ($old && $old != $$ && open(my $cmd, "<", "/proc/$old/cmdline")) {
        local $/;
        my $line = <$cmd> // "";
        kill("KILL", $old) if index($line, "ide-watch: the workspace's file watcher") >= 0;
    }
}
if (open(my $fh, ">", "$pidfile.$$")) { print $fh $$; close $fh; rename("$pidfile.$$", $pidfile); }

watch_tree("");
syswrite(STDOUT, join("\0", "R", "-", scalar(keys %dir_of), "-", "-") . "\0");
if ($limit_hit) { $batch_start = time; }
my $select = IO::Select->new($ino, \*STDIN);
my $buf = "";
while (1) {
    my $wait = defined $batch_start ? $batch_start + $window / 1000 - time : undef;
    $wait = 0 if defined $wait && $wait < 0;
    for my $fh ($select->can_read($wait)) {
        if ($fh != $ino) {    # stdin closed (or anything on it): the backend wants us gone
            my $n = sysread(STDIN, my $junk, 4096);
            exit 0 if !$n;
            next;
        }
        while (1) {
            my $n = sysread($ino, my $chunk, 65536);
            last unless $n;
            $buf .= $chunk;
        }
        while (length($buf) >= 16) {
            my ($wd, $mask, $cookie, $len) = unpack("i I I I", $buf);
            last if length($buf) < 16 + $len;
            my $name = substr($buf, 16, $len);
            $name =~ s/\0+$//;
            substr($buf, 0, 16 + $len, "");
            handle($wd, $mask, $cookie, $name);
        }
    }
    flush() if defined $batch_start && time >= $batch_start + $window / 1000;
}
"""
