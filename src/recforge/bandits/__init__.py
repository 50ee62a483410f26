"""Exploration: contextual bandit policies (`recforge.bandits.policies`,
`recforge.bandits.linear`), off-policy evaluation (`recforge.bandits.ope`), logged feedback
(`recforge.bandits.logged`) and a simulator built from a dataset
(`recforge.bandits.simulator`). Every policy follows `recforge.bandits.base.Policy`."""
