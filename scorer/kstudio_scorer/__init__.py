"""The data plane: `kstudio serve` scores rows with one verified .ilearner model, online and in batch."""
