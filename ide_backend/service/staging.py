"""All or nothing, even through a crash: every file set is first written into a staging folder beside the files,
then committed, with a record in the folder's own name that a later call uses to finish or undo it. A set that
goes through the engine's archive upload (large sets, stopped workspaces, `clean`) is extracted there and committed
by the small program below, run in the workspace; a small set into a running workspace is staged, committed and
moved into place by the container's own writer (images/workspace/ide-write), which leaves the same records, so the
program below finishes or undoes an interrupted writer's set exactly like an archive one.

Under BASE (the folder written to: the workspace folder, or the home folder for VS Code's settings), on the same
filesystem, so every move is a rename:

    BASE/.ide-staging/TX.part/...   being written: not decided. Undone (removed) by whoever finds it.
    BASE/.ide-staging/TX.clean/...  decided, and BASE is being emptied into TX.old/ first (`clean`).
    BASE/.ide-staging/TX/...        decided: its entries are being moved into place. Finished by whoever finds it.

Renaming TX.part to TX (or TX.clean) is the commit: before it, the set is absent; after it, every later call finishes
it before it does anything else, so once the call that found it returns the set is whole. The program checks the
whole set first, as the container's own writer does (every folder on the way a real folder, reached without
following a link, and no file put over a folder), so a commit that starts rarely fails; if it cannot finish as the
workspace user (a folder the user may not write to), it is finished as root in a helper container.

Both hold an exclusive flock of BASE itself for their whole run: a writer that a killed backend left running in
the workspace is waited for (up to 60 s), never undone or finished while it still works.

Exit codes: 0 done; 10 refused before the commit (one line: reason TAB path; the staged set is removed); 11 the
workspace user may not finish it (run it again as root); 1 failed (message on stderr).
"""

from __future__ import annotations

import uuid

STAGING = ".ide-staging"


def new_transaction() -> str:
    return uuid.uuid4().hex


# perl -e COMMIT_SCRIPT BASE [TX clean|keep]: commit TX (after finishing anything older), or, with no TX, finish or
# undo whatever a crashed call left. Paths come in as arguments, never as part of the script.
COMMIT_SCRIPT = r"""
use strict;
use warnings;
use Fcntl qw(O_RDONLY O_DIRECTORY S_ISDIR S_ISLNK LOCK_EX LOCK_NB);
use File::Path qw(remove_tree);
BEGIN { $SIG{__DIE__} = sub { print STDERR @_; exit 1 }; }
umask(022);
my ($base, $tx, $mode) = @ARGV;
die "BASE must be absolute\n" unless defined $base && $base =~ m{^/};
my $stage = "$base/.ide-staging";
# One write of BASE at a time (ide-write takes the same lock): a writer a killed backend left running ends first.
sysopen(my $lock, $base, O_RDONLY | O_DIRECTORY) or ($!{EACCES} ? exit 11 : die "$base: $!\n");
for (my $waited = 0; !flock($lock, LOCK_EX | LOCK_NB); $waited++) {
    die "another write of $base has been running for 60 s\n" if $waited > 1200;
    select(undef, undef, undef, 0.05);
}
my @st = lstat($stage);
exit 0 unless @st;
refuse("symlink", ".ide-staging") unless S_ISDIR($st[2]) && !S_ISLNK($st[2]);

opendir(my $sd, $stage) or die "$stage: $!\n";
my @found = sort grep { /^[0-9a-f]{32}(\.(part|clean|old))?$/ } readdir($sd);
closedir($sd);
my %have = map { $_ => 1 } @found;
for my $name (@found) {    # what crashed calls left: finish the decided, undo the rest
    my ($id, $state) = $name =~ /^([0-9a-f]{32})(?:\.(\w+))?$/;
    next if defined $tx && $id eq $tx;
    if (!defined $state) { apply($id) }
    elsif ($state eq "clean") { empty($id); rename("$stage/$id.clean", "$stage/$id") or die "$id: $!\n"; apply($id) }
    elsif ($state eq "part") { undo("$stage/$name") }
    elsif ($state eq "old" && !$have{$id} && !$have{"$id.clean"}) { undo("$stage/$name") }
}
if (defined $tx) {
    if ($mode eq "clean") { exit 11 unless -w $base && -x _ } else { check("$stage/$tx.part", "") }
    if ($mode eq "clean") {
        rename("$stage/$tx.part", "$stage/$tx.clean") or die "commit: $!\n";
        empty($tx);
        rename("$stage/$tx.clean", "$stage/$tx") or die "commit: $!\n";
    } else {
        rename("$stage/$tx.part", "$stage/$tx") or die "commit: $!\n";
    }
    apply($tx);
}
rmdir($stage);
exit 0;

# Every staged entry can be moved into place: folders on the way are real folders (or missing), nothing replaces a
# folder with a file, and this user may write in every folder something lands in.
sub check {
    my ($from, $rel) = @_;
    opendir(my $dh, $from) or die "$from: $!\n";
    my @entries = grep { $_ ne "." && $_ ne ".." } readdir($dh);
    closedir($dh);
    my $here = $rel eq "" ? $base : "$base/$rel";
    exit 11 if @entries && !(-w $here && -x _);
    for my $e (@entries) {
        my $path = $rel eq "" ? $e : "$rel/$e";
        my @s = lstat("$from/$e") or die "$from/$e: $!\n";
        my @t = lstat("$base/$path");
        if (S_ISDIR($s[2])) {
            next unless @t;
            refuse("symlink", $path) if S_ISLNK($t[2]);
            refuse("notdir", $path) unless S_ISDIR($t[2]);
            check("$from/$e", $path);
        } elsif (@t && S_ISDIR($t[2]) && !S_ISLNK($t[2])) {
            refuse("isdir", $path);
        }
    }
}

# Move everything BASE holds (but the staging folder) into TX.old, to be removed once the set is in place.
sub empty {
    my ($id) = @_;
    my $old = "$stage/$id.old";
    mkdir($old, 0700) or $!{EEXIST} or die "$old: $!\n";
    opendir(my $dh, $base) or die "$base: $!\n";
    my @entries = grep { $_ ne "." && $_ ne ".." && $_ ne ".ide-staging" } readdir($dh);
    closedir($dh);
    for my $e (@entries) {
        my @s = lstat("$base/$e");
        chmod(($s[2] & 07777) | 0200, "$base/$e") if @s && S_ISDIR($s[2]) && !S_ISLNK($s[2]);
        rename("$base/$e", "$old/$e") or ($!{EACCES} || $!{EPERM} ? exit 11 : die "$e: $!\n");
    }
}

# Move the decided set into place: a folder that is not there yet goes whole, one that is there is entered; a file
# replaces what is at its name (a link itself, never its target). Each move is made from inside the target folder,
# reached step by step without following a link. Then the staging folders go.
sub apply {
    my ($id) = @_;
    place("$stage/$id", "");
    chdir($stage) or die "$stage: $!\n";
    # What was emptied out may hold folders without write permission: made writable, so all of it can go.
    system("chmod", "-R", "u+w", "--", "$stage/$id.old") if -d "$stage/$id.old";
    remove_tree("$stage/$id", "$stage/$id.old");
}

sub place {
    my ($from, $rel) = @_;
    opendir(my $dh, $from) or die "$from: $!\n";
    my @entries = grep { $_ ne "." && $_ ne ".." } readdir($dh);
    closedir($dh);
    enter($rel);
    my @inside;    # staged folders whose target folder exists: entered after this folder's own moves
    for my $e (@entries) {
        my $path = $rel eq "" ? $e : "$rel/$e";
        my @s = lstat("$from/$e") or die "$from/$e: $!\n";
        my @t = lstat($e);
        if (S_ISDIR($s[2]) && @t && S_ISDIR($t[2]) && !S_ISLNK($t[2])) {
            push @inside, $e;
            next;
        }
        die "$path: a folder is in the way\n" if @t && S_ISDIR($t[2]) && !S_ISLNK($t[2]);
        rename("$from/$e", $e) or ($!{EACCES} || $!{EPERM} ? exit 11 : die "$path: $!\n");
    }
    place("$from/$_", $rel eq "" ? $_ : "$rel/$_") for @inside;
}

sub enter {
    my ($rel) = @_;
    chdir($base) or die "$base: $!\n";
    my $walked = "";
    for my $part (grep { $_ ne "" } split m{/}, $rel) {
        $walked = $walked eq "" ? $part : "$walked/$part";
        my @s = lstat($part) or die "$walked: $!\n";
        die "$walked: not a real folder\n" if S_ISLNK($s[2]) || !S_ISDIR($s[2]);
        chdir($part) or die "$walked: $!\n";
        my @here = stat(".");
        die "$walked: changed while entered\n" unless @here && $here[0] == $s[0] && $here[1] == $s[1];
    }
}

sub undo {
    my ($dir) = @_;
    system("chmod", "-R", "u+w", "--", $dir);
    remove_tree($dir);
}

sub refuse {
    my ($reason, $path) = @_;
    print "$reason\t$path\n";
    remove_tree("$stage/$tx.part") if defined $tx;
    rmdir($stage);
    exit 10;
}
"""
