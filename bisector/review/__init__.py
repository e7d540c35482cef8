"""Reviewing searches: tables, reports and pins."""
