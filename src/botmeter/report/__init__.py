"""Reporting: results formatted for each consumer (SMS, Slack, Markdown, JSON, Bedrock agents, API
Gateway), the self-contained HTML dashboard, and exports."""
