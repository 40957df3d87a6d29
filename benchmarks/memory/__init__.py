"""Memory: peak RSS of a generation per stage, of the native runner, and of a full-size export."""
