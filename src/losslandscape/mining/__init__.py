"""Mining special directions: targets on the loss (objectives) and projected gradient descent (miner)."""
