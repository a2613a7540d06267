"""Every named set of choices, declared once: the config validates against these, and the
factory and layers read the same tuples."""

LAYOUTS = ("decentralized", "shared")  # Encoder: one (mu, sigma) per channel, or one for all
CONDITIONINGS = ("concat", "film", "none")  # Decoder: how the channel reaches the decoder
FILM_INITS = ("identity", "random")  # FiLM: generator starts at zero, or random and small
ELBO_CHANNELS = ("all", "sampled")  # ELBO: decode every active channel, or one drawn from q(c|x)
BLOCKS = ("subpixel", "upsample")  # Decoder: the 2x upsampling block
HEADS = ("heteroscedastic", "bernoulli", "gaussian")  # output heads (kmixvae.layers.output_heads)
PRIOR_MODES = ("fixed", "learnable")  # MixturePrior: pi, means, scales
PRUNING_GRAPHS = ("pixels", "features")  # ChannelPruning: the k-NN graph links are counted on
