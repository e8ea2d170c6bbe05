"""Pipelines across the stages: ``sequence`` chains transforms and measures every variant.
"""
