"""RT-DETR model: backbone, hybrid encoder, decoder, pre/post-processing, checkpoints and weight converters."""
