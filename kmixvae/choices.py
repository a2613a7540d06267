"""Every named set of choices, declared once: the config validates against these, and the
factory and layers read the same tuples.

Decoder conditionings and output heads are registered parts instead: their
choices are the registries `kmixvae.layers.conditioning.CONDITIONINGS` and
`kmixvae.layers.output_heads.HEADS`.
"""

LAYOUTS = ("decentralized", "shared")  # Encoder: one (mu, sigma) per channel, or one for all
FILM_INITS = ("identity", "random")  # FiLM: generator starts at zero, or random and small
ELBO_CHANNELS = ("all", "sampled")  # ELBO: decode every active channel, or one drawn from q(c|x)
BLOCKS = ("subpixel", "upsample")  # Decoder: the 2x upsampling block
PRIOR_MODES = ("fixed", "learnable")  # MixturePrior: pi, means, scales
PRUNING_GRAPHS = ("pixels", "features")  # ChannelPruning: the k-NN graph links are counted on
# data.source: where the images are read from (folder: PNG/JPEG files, read with Pillow)
DATA_SOURCES = ("tfds", "idx", "npz", "folder")
REFRESH_GRAPHS = ("features", "agreement")  # data.neighbor_refresh_graph
NEIGHBOR_SPACES = ("pixels", "hog")  # data.neighbor_space: pixel vectors or HOG descriptors
PIPELINES = ("auto", "tf_data", "arrays")  # data.pipeline: tf.data, in-memory PyDataset, or auto
CURRICULUM_SCHEDULES = ("fixed", "plateau")  # ChannelCurriculum: when the next channel unlocks
UNLOCK_INITS = ("fresh", "split")  # ChannelCurriculum: how an unlocked channel starts
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")  # training.optimizer (keras.optimizers)
LR_SCHEDULES = ("constant", "cosine")  # training.lr_schedule
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies
# distribution.strategy, per backend (kmixvae.training.distribution)
STRATEGIES = {
    "tensorflow": ("auto", "none", "data_parallel", "mirrored", "multi_worker_mirrored", "tpu"),
    "jax": ("auto", "none", "data_parallel"),
}
