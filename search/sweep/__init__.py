"""The sweep machinery: space files, the searcher and scheduler, the Tune set-up, the trainable, MLflow tracking,
the sweep record and its lock, the seed confirmation, summaries and the console progress."""
