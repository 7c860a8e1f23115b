"""Fallback plugins (`trylast`): with them alone a release can go from intake to close.

Each is loaded exactly like a third-party plugin, and any real plugin overrides it.
"""
