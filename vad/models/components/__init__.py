"""Blocks shared by more than one model or loss."""
