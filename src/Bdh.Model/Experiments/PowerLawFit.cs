namespace Bdh.Model.Experiments;

/// <summary>
/// A discrete power law p(k) = k^−α / ζ(α, k_min) fitted to the values k ≥ k_min of a sample, as Clauset, Shalizi and
/// Newman (2009) do: α by maximum likelihood for each candidate k_min, k_min where the Kolmogorov-Smirnov distance
/// between the data and the fit is smallest; then Vuong's likelihood-ratio test against a discrete exponential
/// p(k) ∝ e^−λk on the same tail. R > 0 favours the power law; p says whether the sign of R is significant.
/// </summary>
public sealed record PowerLawFit(double Alpha, int KMin, int TailCount, double KsDistance, double LogLikelihoodRatio, double Vuong, double PValue)
{
    /// <summary>Fits the degrees (zeros are left out: log-log plots and the power law start at 1). Null when fewer than 10 positive values.</summary>
    public static PowerLawFit? Fit(IEnumerable<int> sample, int minTail = 10)
    {
        int[] values = sample.Where(v => v > 0).Order().ToArray();
        if (values.Length < minTail) return null;
        PowerLawFit? best = null;
        foreach (int kMin in values.Distinct())
        {
            var tail = values.AsSpan(Array.IndexOf(values, kMin));
            if (tail.Length < minTail || tail[^1] == kMin) break;
            double alpha = MaximumLikelihoodAlpha(tail, kMin);
            double ks = Distance(tail, kMin, alpha);
            if (best is null || ks < best.KsDistance)
                best = new PowerLawFit(alpha, kMin, tail.Length, ks, 0, 0, 1);
        }
        if (best is null) return null;
        var (r, vuong, p) = AgainstExponential(values.AsSpan(Array.IndexOf(values, best.KMin)), best.KMin, best.Alpha);
        return best with { LogLikelihoodRatio = r, Vuong = vuong, PValue = p };
    }

    /// <summary>The Hurwitz zeta function ζ(α, q) = Σ_{k ≥ q} k^−α for α > 1: a direct sum, then Euler-Maclaurin for the tail.</summary>
    public static double HurwitzZeta(double alpha, double q)
    {
        const int terms = 64;
        double sum = 0;
        for (int k = 0; k < terms; k++) sum += Math.Pow(q + k, -alpha);
        double x = q + terms;
        // ∫_x^∞ t^−α dt + f(x)/2 − f'(x)/12 + f'''(x)/720, f(t) = t^−α.
        return sum + Math.Pow(x, 1 - alpha) / (alpha - 1) + 0.5 * Math.Pow(x, -alpha) + alpha / 12 * Math.Pow(x, -alpha - 1)
            - alpha * (alpha + 1) * (alpha + 2) / 720 * Math.Pow(x, -alpha - 3);
    }

    /// <summary>argmax_α of −n ln ζ(α, k_min) − α Σ ln k, a concave function: golden-section search on (1, 10].</summary>
    private static double MaximumLikelihoodAlpha(ReadOnlySpan<int> tail, int kMin)
    {
        double sumLog = 0;
        foreach (int k in tail) sumLog += Math.Log(k);
        int n = tail.Length;
        double LogLikelihood(double a) => -n * Math.Log(HurwitzZeta(a, kMin)) - a * sumLog;
        double lo = 1.0001, hi = 10, golden = (Math.Sqrt(5) - 1) / 2;
        double x1 = hi - golden * (hi - lo), x2 = lo + golden * (hi - lo);
        double f1 = LogLikelihood(x1), f2 = LogLikelihood(x2);
        while (hi - lo > 1e-7)
        {
            if (f1 < f2) { lo = x1; x1 = x2; f1 = f2; x2 = lo + golden * (hi - lo); f2 = LogLikelihood(x2); }
            else { hi = x2; x2 = x1; f2 = f1; x1 = hi - golden * (hi - lo); f1 = LogLikelihood(x1); }
        }
        return (lo + hi) / 2;
    }

    /// <summary>max_k |S(k) − P(k)| over the tail, S the empirical and P the fitted CDF: P(K ≤ k) = 1 − ζ(α, k+1)/ζ(α, k_min).</summary>
    private static double Distance(ReadOnlySpan<int> tail, int kMin, double alpha)
    {
        double norm = HurwitzZeta(alpha, kMin), upper = norm, worst = 0; // upper = ζ(α, k + 1) as k advances
        int n = tail.Length, i = 0;
        for (int k = kMin; k <= tail[^1]; k++)
        {
            upper -= Math.Pow(k, -alpha);
            while (i < n && tail[i] <= k) i++;
            worst = Math.Max(worst, Math.Abs(i / (double)n - (1 - upper / norm)));
        }
        return worst;
    }

    /// <summary>Vuong's test on the tail: R = Σ ln(p_pl/p_exp), its normalised statistic and the two-sided p-value.</summary>
    private static (double R, double Vuong, double P) AgainstExponential(ReadOnlySpan<int> tail, int kMin, double alpha)
    {
        int n = tail.Length;
        double mean = 0;
        foreach (int k in tail) mean += k - kMin;
        mean /= n;
        // The discrete exponential on k ≥ k_min: p(k) = (1 − e^−λ) e^−λ(k−k_min), MLE λ = ln(1 + 1/mean).
        double lambda = Math.Log(1 + 1 / Math.Max(mean, 1e-12));
        double logZeta = Math.Log(HurwitzZeta(alpha, kMin)), logNorm = Math.Log(-double.ExpM1(-lambda));
        var ratios = new double[n];
        for (int i = 0; i < n; i++)
            ratios[i] = (-alpha * Math.Log(tail[i]) - logZeta) - (logNorm - lambda * (tail[i] - kMin));
        double r = ratios.Sum(), average = r / n;
        double sd = Math.Sqrt(ratios.Sum(x => (x - average) * (x - average)) / n);
        double z = sd > 0 ? r / (sd * Math.Sqrt(n)) : 0;
        return (r, z, Statistics.NormalTwoSided(z));
    }
}
