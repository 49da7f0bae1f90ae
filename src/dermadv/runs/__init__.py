"""Runs: what a piece of work is (frozen specs), and the executors that run it locally or on Ray."""
