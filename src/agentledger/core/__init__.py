"""The pure domain: events, sessions, state scopes and the projection. No I/O, no clock."""
