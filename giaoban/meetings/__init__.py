"""Meetings: scheduling, invitations, the lifecycle, who may see and do what, the check-in form."""
