"""Developer tools, never deployed: the `raptorflow` CLI, the local stack (Firestore emulator,
functions under functions-framework, the workflow engine) and the sample business."""
