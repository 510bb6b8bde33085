"""Meetings, floor control, attendance, chat (issue 4)."""
