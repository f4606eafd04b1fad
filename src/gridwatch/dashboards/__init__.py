"""gridwatch.dashboards"""
