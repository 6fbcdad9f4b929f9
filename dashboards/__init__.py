"""tracedagent's Grafana dashboards, built from code with grafana-foundation-sdk.

``python -m dashboards.build`` writes ``dashboards/generated/*.json``; ``alerts.yml`` holds the alert rules.
"""
