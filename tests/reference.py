"""Independent plain-NumPy model equations (SPEC sections 1 and 2), written
from the formulas without any ndjax code, for checking ndjax against, and
tight scipy solves built on them."""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

# ---- Hodgkin-Huxley, classic units, rest at 0 mV -------------------------------------------


def hh_reference_params(gna=120.0, gk=36.0, gl=0.3, ena=120.0, ek=-12.0, el=10.6, c=1.0, sv=1.0, st=1.0):
    """Scaled parameters as a plain dict (SPEC 1 scaling rules)."""
    kin = {
        "m": (25.0, 0.1, 10.0, 0.0, 4.0, 18.0),
        "h": (0.0, 0.07, 20.0, 30.0, 1.0, 10.0),
        "n": (10.0, 0.01, 10.0, 0.0, 0.125, 80.0),
    }
    out = {"gna": gna * st, "gk": gk * st, "gl": gl * st, "ena": ena * sv, "ek": ek * sv, "el": el * sv}
    out["c"] = c
    out["iscale"] = sv * st
    for g, (avh, aa, ak, bvh, ba, bk) in kin.items():
        a_scale = st / sv if g in "mn" else st
        out[g] = (avh * sv, aa * a_scale, ak * sv, bvh * sv, ba * st, bk * sv)
    return out


def hh_rates_ref(v, p):
    rates = {}
    for g in "mhn":
        avh, aa, ak, bvh, ba, bk = p[g]
        if g in "mn":
            u = (avh - v) / ak
            alpha = aa * ak if u == 0 else aa * (avh - v) / math.expm1(u)
            beta = ba * math.exp((bvh - v) / bk)
        else:
            alpha = aa * math.exp((avh - v) / ak)
            beta = ba / (math.exp((bvh - v) / bk) + 1.0)
        rates[g] = (alpha, beta)
    return rates


def hh_rhs_ref(t, y, p, iapp):
    v, m, h, n = y
    r = hh_rates_ref(v, p)
    i_ion = p["gna"] * m**3 * h * (v - p["ena"]) + p["gk"] * n**4 * (v - p["ek"]) + p["gl"] * (v - p["el"])
    dv = (p["iscale"] * iapp(t) - i_ion) / p["c"]
    dx = [r[g][0] * (1 - x) - r[g][1] * x for g, x in zip("mhn", (m, h, n), strict=True)]
    return np.array([dv, *dx])


# ---- NeuroDyn, SI ----------------------------------------------------------------------------

C_BASE, C_G, KAPPA, KAPPA_LIN, V_T, R_REV, R_CENTRE = 4e-12, 5e-12, 0.7, 0.2, 0.026, 1.63e6, 1.85e6


def nd_reference_params(dg, de, dib, v_ref=0.9, i_voltage=150e-9, i_master=200e-9, cs=1.0, mm=None):
    """Physical values from words, with optional mismatch dict (factors g, e, ib, exponent offsets x)."""
    dg, de, dib = (np.asarray(a, dtype=float) for a in (dg, de, dib))
    mm = mm or {"g": np.ones(3), "e": np.ones(3), "ib": np.ones((3, 2, 7)), "x": np.zeros(3)}
    return {
        "g": dg * (KAPPA_LIN / V_T) * (i_master / 1024) * mm["g"],
        "e": de * (i_voltage / 1024) * R_REV * mm["e"] + v_ref,
        "ib": dib * i_master / 1024 * mm["ib"],
        "vb": np.array([v_ref + (j - 3) * 2 * R_CENTRE * i_voltage / 7 for j in range(7)]),
        "x": np.array([3.0, 1.0, 4.0]) + mm["x"],
        "c": C_BASE * cs,
    }


def nd_rates_ref(v, p):
    signs = {0: (1, -1), 1: (-1, 1), 2: (1, -1)}
    out = []
    for gate in range(3):
        pair = []
        for k in range(2):
            s = signs[gate][k]
            total = 0.0
            for j in range(7):
                total += p["ib"][gate, k, j] / (1.0 + math.exp(s * KAPPA * (p["vb"][j] - v) / V_T))
            pair.append(total / (C_G * V_T))
        out.append(pair)
    return out


def nd_rhs_ref(t, y, p, iapp):
    v, m, h, n = y
    pw = lambda x, e: max(x, 0.0) ** e  # noqa: E731
    cond = [p["g"][0] * pw(m, p["x"][0]) * pw(h, p["x"][1]), p["g"][1] * pw(n, p["x"][2]), p["g"][2]]
    i_ion = sum(
        2 * c * (V_T / KAPPA_LIN) * math.tanh(KAPPA_LIN * (v - e) / (2 * V_T))
        for c, e in zip(cond, p["e"], strict=True)
    )
    rates = nd_rates_ref(v, p)
    dx = [rates[i][0] * (1 - x) - rates[i][1] * x for i, x in enumerate((m, h, n))]
    return np.array([(iapp(t) - i_ion) / p["c"], *dx])


def solve_reference(rhs, p, iapp, y0, ts, rtol=1e-11, atol=1e-12, max_step=np.inf):
    """Tight DOP853 solution at ``ts`` (scipy)."""
    sol = solve_ivp(
        rhs,
        (ts[0], ts[-1]),
        y0,
        method="DOP853",
        t_eval=ts,
        rtol=rtol,
        atol=atol,
        args=(p, iapp),
        max_step=max_step,
    )
    assert sol.success, sol.message
    return sol.y.T
