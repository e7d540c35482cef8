"""Running a search: the plan, the step, the executors, the rounds and the session."""
