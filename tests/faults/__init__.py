"""The fault matrix (issue 10, item 5): interrupt kubeforge's mutating workflows at their step
boundaries in the lab, continue them, and check that nothing was harmed. See docs/faults.md."""
