"""Training of the learned methods' artifacts (L2C routers, TokenCache predictors) on a frozen model."""
