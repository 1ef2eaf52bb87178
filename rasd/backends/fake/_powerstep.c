/*
 * The fake node's power model, the part every step pays (rasd.backends.fake.stepper): the board's
 * response to demand, and delivered power and what integrates it without smoothing or a reset.
 *
 * Why native: a simulated GPU takes 200 steps a second; in Python each costs about 200 ns of the
 * reading process's CPU, here a few. The arithmetic is the Python loop's, operation for operation
 * in the same order on IEEE doubles, so every value is the same to the bit: build without
 * floating-point contraction (-ffp-contract=off: a fused multiply-add rounds once where Python
 * rounds twice) and never with -ffast-math. The loader checks this against the Python loop on a
 * test sequence before it uses the library.
 *
 * Plain C, no Python API: loaded with ctypes.
 */

/* What these functions take and do; stepper.py refuses a library built from another version. */
int ps_version(void)
{
    return 1;
}

/* consts: t_idle, w_idle, span, t_span, step seconds, thermal response
 * state (in and out): watts, temperature, energy mJ, hold seconds, window sum, and on return the
 * window sum after step ``cut`` (the refresh), where 1 <= cut <= n
 * window: the last ``wlen`` delivered watts, a ring whose oldest entry is at ``wpos``
 * Returns the ring's new oldest position. */
int ps_fold(const double *raws, int n, double limit, double *window, int wlen, int wpos,
            double *state, int cut, const double *consts)
{
    double out = state[0], temp = state[1], energy = state[2], hold = state[3], wsum = state[4];
    const double t_idle = consts[0], w_idle = consts[1], span = consts[2], t_span = consts[3];
    const double step_s = consts[4], thermal = consts[5];
    for (int j = 0; j < n; j++) {
        double raw = raws[j];
        double now = raw < limit ? raw : limit;
        if (now > out)
            hold = 0.0;
        else if (now < out)
            hold += step_s;
        out = now;
        temp += (t_idle + (out - w_idle) / span * t_span - temp) * thermal;
        energy += out * step_s * 1000.0;
        wsum += out - window[wpos];
        window[wpos] = out;
        wpos = wpos + 1 == wlen ? 0 : wpos + 1;
        if (j + 1 == cut)
            state[5] = wsum;
    }
    state[0] = out, state[1] = temp, state[2] = energy, state[3] = hold, state[4] = wsum;
    return wpos;
}

/* The board's response to demand, for the runs of steps ``bases``/``counts``: step j of a run
 * demands base * ripple[i], i counting on from ``start`` around the ``ripple_len`` factors, and
 * raw += (demand - raw) * response. Writes each step's raw draw to ``out``; returns the last. */
double ps_raw(double raw, const double *ripple, int ripple_len, int start, const double *bases,
              const int *counts, int nruns, double response, double *out)
{
    int i = start;
    for (int q = 0; q < nruns; q++) {
        const double base = bases[q];
        for (int c = counts[q]; c > 0; c--) {
            raw += (base * ripple[i] - raw) * response;
            *out++ = raw;
            if (++i == ripple_len)
                i = 0;
        }
    }
    return raw;
}
