"""Scoring with the task's official metric."""
