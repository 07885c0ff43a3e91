"""The compiler: tracing, graph IR, op tables, autodiff, loop IR, renderers."""
