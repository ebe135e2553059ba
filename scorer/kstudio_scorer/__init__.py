"""The data plane: `kstudio serve` scores rows with one verified .ilearner model, online and in batch;
`kstudio score-shard` scores one shard of a BatchJob (the pods of its Indexed Job)."""
