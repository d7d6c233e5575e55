"""Figure drawers for the synthetic generator: each draws one picture from a seeded RNG and
returns the facts it drew and questions answered by those facts."""
