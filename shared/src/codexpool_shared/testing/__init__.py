"""Helpers the test suites share: finding real infrastructure, namespaces, fault injection."""
