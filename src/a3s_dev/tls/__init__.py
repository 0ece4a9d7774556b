"""a3s's local certificate authority (`ca`) and the trust stores it is installed into (`trust`)."""
