"""iReasoner (spec §1-4): the Proposer asks, the Solver answers N times, rewards for answer and
step agreement, KL-regularised REINFORCE on both adapters. `spec.SPEC` registers it."""
