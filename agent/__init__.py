"""Orchestration: persona configs, turn-taking, conversations, duets, metrics and the CLI."""
