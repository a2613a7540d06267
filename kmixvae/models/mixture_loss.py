"""MixtureLoss: a MixtureVAE's batch loss from its per-image terms, and its metric trackers."""

from __future__ import annotations

import keras
from keras import ops

from kmixvae.objectives.usage_entropy import usage_entropy
from kmixvae.utils.replicas import scale_for_replicas

# The loss and the ELBO's parts the model logs every step (history curves, NaN checks).
LOSS_TERMS = ("loss", "nelbo", "recon", "kl_z", "kl_c", "usage_entropy")


class MixtureLoss:
    """The trained loss of a `MixtureVAE` (a mixin): ELBO weight * -ELBO + each objective's term.

    Reads the per-image terms that `MixtureVAE.call` returns; logs the
    ELBO's parts, the usage entropies and each objective's own metrics.
    """

    def _make_trackers(self):
        """One `Mean` per logged value (every one updated in every step)."""
        names = ["nelbo", "recon", "kl_z", "kl_c", "usage_entropy", "confidence_entropy"]
        names.append("active_channels")
        for o in self.objectives:
            names.extend(m for m in o.metrics if m not in names)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.usage_trackers = [
            keras.metrics.Mean(name=f"usage_{c}") for c in range(self.num_channels)
        ]

    def loss_terms(self, terms):
        """Reduces the per-image terms of `call` to the batch loss, its parts and the metrics."""
        q_a = terms["q_active"]
        recon = ops.sum(q_a * terms["nll"], axis=-1)
        kl_z = ops.sum(q_a * terms["kl_z"], axis=-1)
        kl_c = terms["kl_c"]
        q = terms["q"]
        per_image_entropy = -ops.sum(q * ops.log(ops.maximum(q, 1e-12)), axis=-1)
        nelbo = ops.mean(recon) + ops.mean(kl_z) + ops.mean(kl_c)
        loss = self.elbo.weight * (ops.mean(recon) + (ops.mean(kl_z) + ops.mean(kl_c)))
        out = {}
        for i, objective in enumerate(self.objectives):
            if any(v not in terms["views"] for v in objective.views):
                continue  # its views are not drawn: its metrics log 0 (see compute_loss)
            # On or off by its switch (`start_epoch` sets it): a term that is off
            # adds 0 and logs 0, in the same compiled step.
            switch = self.term_switches[i]
            term, metrics = self._objective_term(objective, terms["views"], self.head_weights)
            loss = loss + objective.weight * switch * term
            out.update({name: switch * value for name, value in metrics.items()})
        out.update(
            {
                "loss": loss,
                "nelbo": nelbo,
                "recon": ops.mean(recon),
                "kl_z": ops.mean(kl_z),
                "kl_c": ops.mean(kl_c),
                "usage_entropy": usage_entropy(q),
                "confidence_entropy": ops.mean(per_image_entropy),
                "usage": ops.mean(q, axis=0),
            }
        )
        return out

    @staticmethod
    def _objective_term(objective, views, head_weights):
        """An objective's term and metrics: on `(B, K)` views, or on `(B, heads, K)`
        views the candidate heads' terms weighted by `head_weights` (`(heads,)`:
        the mean over the heads before the selection, the first head after it)."""
        if len(views["x"].shape) == 2:
            return objective.term(views)
        heads = views["x"].shape[1]
        parts = [objective.term({name: v[:, h] for name, v in views.items()}) for h in range(heads)]
        term = ops.sum(head_weights * ops.stack([t for t, _ in parts]))
        metrics = {
            m: ops.sum(head_weights * ops.stack([p[1][m] for p in parts])) for m in parts[0][1]
        }
        return term, metrics

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        parts = self.loss_terms(y_pred)
        for name, tracker in self.trackers.items():
            if name == "active_channels":
                tracker.update_state(ops.sum(self.channel_mask))
            else:
                # Terms that are off in this step (no neighbour pairs, self-labelling not
                # started) log 0: every tracker is updated in every step, so the compiled
                # step's state keeps one structure and never retraces.
                tracker.update_state(parts.get(name, 0.0))
        usage = parts["usage"]
        for c, tracker in enumerate(self.usage_trackers):
            tracker.update_state(usage[c])
        return scale_for_replicas(parts["loss"])
