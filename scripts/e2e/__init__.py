"""The suites of scripts/e2e.py (its entry point), one module per topic, on
the helpers of e2e.common."""
