"""The marketing analysis: the six phases, their prompts and evidence, the pre-flight every
phase, budget check and run start share. The top layer of `common`."""
