"""Input and output: processes, git, history, workspaces, configuration and DVC data."""
