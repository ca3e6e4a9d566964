"""Everything the operator sees: consoles, plan and report printers, progress, --output json."""
