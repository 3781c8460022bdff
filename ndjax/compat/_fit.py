"""The guide's ``FitND``: classical fit of NeuroDyn words to a conductance-based model.

A thin shell over :mod:`ndjax.fit._classical` (SPEC section 3). Conductances use
``kappa_lin`` on both the digital and the analog path, so a digital chip's
physical conductances equal the analog fit to half an LSB (the NumPy
original used ``kappa`` for the words: 3.5x too little conductance).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..fit import _classical as F
from ..fit._settings import FitSettings
from ..models._kinetics import sigmoid_sum, steady_state, time_constant
from ..models._neurodyn import word_units
from ._models import HHModel, _x64

__all__ = ["FitND"]


class FitND:
    """Fit NeuroDyn sigmoid weights, conductances and reversals to a model.

    Args:
        hh: an SI-unit model (``HHModel(..., SI_units=True)``, usually with
            ``scl_v`` about 3) whose gates ``m, h, n`` have ``alpha``/``beta``.
        vrange: fit voltages (V); default ``arange(E_K, E_Na/2, 0.5 mV)``.
        capacitance_scaling: the chip's ``C_ND = 4 pF x capacitance_scaling``.
        I_voltage: the chip's I_voltage (A); sets the sigmoid spacing and the
            reversal-word unit.
        I_master: the chip's I_master (A); sets the current-word unit.

    Attributes:
        Vmean: ``(E_K + E_Na)/2`` of the model (V); the chip's ``V_ref`` stands for it.
        centres: (7,) sigmoid centres used in the fit (V).
        C_ratio: ``C_HH / C_ND``.
        fits: per-gate :class:`ndjax.fit.GateFit` after :meth:`fit`.
        figures: the last plots, ``{"alpha_beta": Figure, "inf_tau": Figure}``.
    """

    def __init__(
        self,
        hh: HHModel,
        vrange=None,
        capacitance_scaling: float = 1,
        I_voltage: float = 200e-9,
        I_master: float = 150e-9,
    ):
        if not hasattr(hh, "m") or not hasattr(hh, "Ek"):
            raise TypeError(f"FitND needs an HHModel-like model, got {type(hh).__name__}")
        if not getattr(hh, "SI_units", True):
            raise ValueError("FitND needs an SI-unit model: build it with HHModel(..., SI_units=True)")
        for name, value in (("capacitance_scaling", capacitance_scaling), ("I_voltage", I_voltage),
                            ("I_master", I_master)):  # fmt: skip
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        self.hh = hh
        self.scl_v = float(getattr(hh, "scl_v", 1.0))
        self.capacitance_scaling = float(capacitance_scaling)
        self.I_voltage = float(I_voltage)
        self.I_master = float(I_master)
        self.Vmean = (hh.Ek + hh.Ena) / 2
        if vrange is None:
            vrange = np.arange(hh.Ek, hh.Ena / 2, 5e-4).T
        self.vrange = np.asarray(vrange, dtype=float)
        if self.vrange.ndim != 1 or self.vrange.size < 8 or not np.all(np.isfinite(self.vrange)):
            raise ValueError(
                f"vrange must be a 1-D finite array of at least 8 voltages, got {self.vrange.shape}"
            )
        self._consts = F.host_constants()
        self.centres = F.fit_centres(self.Vmean, self.I_voltage, self._consts)
        self.C_ratio = float(hh.C) / (self._consts.c_base * self.capacitance_scaling)
        self.fits: list[F.GateFit] = []
        self.figures: dict = {}
        self._s: float | None = None

    # ---- fitting --------------------------------------------------------------------------

    def fitHH(self, plot_alpha_beta: bool = False, plot_inf_tau: bool = False) -> np.ndarray:
        """Fit the HH gates m, h, n; return the weights (3, 2, 7) in 1/s ([alpha, beta] per gate)."""
        return self.fit([self.hh.m, self.hh.h, self.hh.n], ["m", "h", "n"], plot_alpha_beta, plot_inf_tau)

    @_x64
    def fit(
        self,
        X: Sequence,
        labels: Sequence[str] | None = None,
        plot_alpha_beta: bool = False,
        plot_inf_tau: bool = False,
    ) -> np.ndarray:
        """Fit any gates with ``alpha(V)``/``beta(V)`` (of a model with conductances
        ``gna, gk, gl``, which, with the weights, fix the time scale).

        Returns:
            (len(X), 2, 7) weights in 1/s.
        """
        X = list(X)
        if not X or not all(hasattr(x, "alpha") and hasattr(x, "beta") for x in X):
            raise TypeError("fit needs a list of gate objects with alpha(V) and beta(V)")
        labels = list(labels) if labels is not None else [getattr(x, "name", str(i)) for i, x in enumerate(X)]
        if len(labels) != len(X):
            raise ValueError(f"labels has {len(labels)} names for {len(X)} gates")
        v = self.vrange
        alphas = [np.asarray(x.alpha(v)) for x in X]
        betas = [np.asarray(x.beta(v)) for x in X]
        fit = F.classical_fit(v, alphas, betas, self.centres, self._model_g(), self.C_ratio, self.I_master,
                              self._consts)  # fmt: skip
        self.fits, weights, self._s = fit.fits, fit.weights, fit.s
        if plot_alpha_beta or plot_inf_tau:
            self._plot(X, labels, weights, plot_alpha_beta, plot_inf_tau)
        return weights

    def _model_g(self) -> np.ndarray:
        return np.array([self.hh.gna, self.hh.gk, self.hh.gl], dtype=float)

    def _require_fit(self) -> float:
        if self._s is None:
            raise RuntimeError("call fitHH() (or fit()) first: the time scale comes from the fit")
        return self._s

    # ---- conversions ----------------------------------------------------------------------

    def get_scl_t(self) -> float:
        """How many times faster than the SI model the chip runs (``1/s``)."""
        return 1.0 / self._require_fit()

    def get_analog_Ib(self, weights) -> np.ndarray:
        """Sigmoid currents I_b (A), time-scaled: ``w C_g V_T / s``."""
        return F.analog_ib(weights, self._require_fit(), self._consts)

    def get_digital_Ib(self, weights) -> np.ndarray:
        """Sigmoid words ``round(I_b / s / (I_master/1024))``, clipped to 0..1023 with a warning."""
        return F.to_words("dIb", self.get_analog_Ib(weights) / self._units()[2], self._warn)

    def get_analog_g(self, g) -> np.ndarray:
        """Chip conductances (S): ``g / s / C_ratio``."""
        return F.analog_g(g, self._require_fit(), self.C_ratio)

    def get_digital_g(self, g) -> np.ndarray:
        """Conductance words ``round(g / s / C_ratio / ((kappa_lin/V_T)(I_master/1024)))``."""
        return F.to_words("dg", self.get_analog_g(g) / self._units()[0], self._warn)

    def get_analog_E(self, E) -> np.ndarray:
        """Reversal offsets from V_ref (V): ``E scl_v - Vmean`` (``E`` unscaled, SI)."""
        return F.analog_e(E, self.scl_v, self.Vmean)

    def get_digital_E(self, E) -> np.ndarray:
        """Reversal words ``round((E scl_v - Vmean) / ((I_voltage/1024) R_rev))``."""
        return F.to_words("dErev", self.get_analog_E(E) / self._units()[1], self._warn)

    def convert_I(self, I0):
        """Chip current for a model current density ``I0`` (A/cm^2): ``I0 scl_v scl_t C_ND / C_HH``."""
        return F.chip_current(I0, self.scl_v, self.get_scl_t(), self._consts.c_base, self.capacitance_scaling,
                              float(self.hh.C))  # fmt: skip

    def _units(self) -> tuple[float, float, float]:
        """One LSB of the conductance, reversal and sigmoid words (S, V, A)."""
        return word_units(self.I_master, self.I_voltage, self._consts)

    def fit_end_to_end(
        self,
        currents="auto",
        *,
        V_ref: float = 0.9,
        t_hh_ms: float = 100.0,
        capacitance_scaling: float | None = None,
        speedup: float | str = "conductance",
        progress=print,
        settings: FitSettings | None = None,
        seed: int = 0,
    ) -> dict:
        """Integer words that make the chip spike like the model (``ndjax.fit.fit_words``).

        Starts from the NNLS fit of this object's model, with this object's ``I_voltage``
        and ``I_master``; the fitted chip has the ``capacitance_scaling`` given here.

        Args:
            currents: model currents (uA/cm^2) the fit trains on, or ``"auto"`` (the default):
                chosen from the model's own F-I curve (:func:`ndjax.fit.auto_currents`; for
                the guide's model ``0, 5, 7.25, 7.75, 10, 15, 20``).
            V_ref: the chip's reference voltage.
            t_hh_ms: span of each current, ms of model time.
            capacitance_scaling: of the fitted chip (``None``: 0.03, the default of
                :func:`ndjax.fit.make_target`: a small capacitor makes the chip fast
                enough that the rate words get the LSBs they need; measured in
                ``experiments/FIT_RESULTS.md``). Pass ``self.capacitance_scaling`` to
                keep this object's.
            speedup: chip speed (see :func:`ndjax.fit.make_targets`): ``"conductance"``
                puts the largest conductance word at 1023; ``"auto"`` also tries FitND's own
                time scale for that capacitance and keeps the better; a number is a factor
                over FitND's time scale.
            progress: called with progress lines (``None``: silent).
            settings: the fit's settings (:class:`ndjax.fit.FitSettings`; ``None``: its defaults).
            seed: seeds the calibration.

        Returns:
            A dict like ``words.json``: ``dg``, ``dErev``, ``dIb`` (integer arrays),
            ``V_ref``, ``I_voltage``, ``I_master``, ``capacitance_scaling`` (the fitted
            chip's), ``scl_t``, ``scl_v``, and ``outcome`` (the full :class:`FitOutcome`).
            Feed the chip ``I0 * scl_v * scl_t * 4 pF * capacitance_scaling / C_HH``
            for a model current ``I0``.
        """
        from .. import fit as _fit

        hh = self.hh
        scl_t_model = float(getattr(hh, "scl_t", 1.0))
        pairs = _fit.make_targets(
            gna=hh.gna / scl_t_model * 1e3, gk=hh.gk / scl_t_model * 1e3, gl=hh.gl / scl_t_model * 1e3,
            ena=hh.Ena / self.scl_v * 1e3, ek=hh.Ek / self.scl_v * 1e3, el=hh.El / self.scl_v * 1e3,
            scl_v=self.scl_v, i_voltage=self.I_voltage, i_master=self.I_master, v_ref=V_ref, speedup=speedup,
            **({} if capacitance_scaling is None else {"capacitance_scaling": capacitance_scaling}),
        )  # fmt: skip
        out = _fit.fit_words(*pairs[0], currents, t_hh_ms=t_hh_ms, progress=progress, alternatives=pairs[1:],
                             settings=settings or FitSettings(), seed=seed)  # fmt: skip
        target = out.target
        dg, de, dib = out.words
        return dict(dg=dg, dErev=de, dIb=dib, V_ref=V_ref, I_voltage=self.I_voltage, I_master=self.I_master,
                    capacitance_scaling=target.capacitance_scaling, scl_t=target.scl_t, scl_v=self.scl_v,
                    outcome=out)  # fmt: skip

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(message, stacklevel=4)

    # ---- plots ----------------------------------------------------------------------------

    def _plot(self, X, labels, weights, plot_alpha_beta, plot_inf_tau):
        from .. import plot

        v = self.vrange
        c = self._consts
        unit = self._units()[2] * self._require_fit() / (c.c_g * c.v_t)  # one LSB in 1/s
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = self.get_digital_Ib(weights) * unit
        orig = np.stack([[np.asarray(x.alpha(v)), np.asarray(x.beta(v))] for x in X])

        def curves(w):
            c = self._consts
            return np.stack([[np.asarray(sigmoid_sum(v, w[i, k], self.centres, f.signs[k], c.kappa, c.v_t))
                              for k in range(2)]
                             for i, f in enumerate(self.fits)])  # fmt: skip

        ab = {"original": orig, "fit": curves(weights), "fit quantized": curves(quantized)}
        if plot_alpha_beta:
            self.figures["alpha_beta"] = plot.plot_gate_fits(
                v, labels, ab, kind="alpha_beta", title=f"alpha/beta fits (scl_v={self.scl_v:g})"
            )
        if plot_inf_tau:
            it = {k: np.stack([steady_state(c[:, 0], c[:, 1]), time_constant(c[:, 0], c[:, 1])], axis=1)
                  for k, c in ab.items()}  # fmt: skip
            self.figures["inf_tau"] = plot.plot_gate_fits(
                v, labels, it, kind="inf_tau", title=f"inf/tau fits (scl_v={self.scl_v:g})"
            )
