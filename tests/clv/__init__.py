"""Tests of churnguard.clv."""
