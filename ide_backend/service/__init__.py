"""The service: workspaces, their containers, processes, files and status, in domain terms."""
