"""flowctl: CRM automations (flows, pipelines, care processes) as YAML in git, run durably."""

__version__ = "0.1.0"
