"""examctl: the online exam platform's maintenance jobs, run from cron, systemd or Kubernetes."""

__version__ = "0.1.0"
