"""One function per pipeline stage: it reads the previous stage's artifact from the run store and
writes its own. Prefect flows call these; they know nothing of Prefect."""
