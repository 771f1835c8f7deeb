"""Assembles components from config and owns their lifecycle."""
