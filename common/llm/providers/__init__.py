"""One module per model provider, each implementing `common.llm.base.Provider`."""
