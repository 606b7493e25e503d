namespace Bdh.Model.Experiments;

/// <summary>The normal distribution's tails, accurate in relative terms far out (p-values of 1e-15 and below).</summary>
public static class Statistics
{
    /// <summary>
    /// erfc(x) for x ≥ 0 by the Chebyshev-fitted exponential of Press et al. (Numerical Recipes, erfcc): relative error
    /// below 1.2e-7 for every x, so small tail probabilities keep their digits.
    /// </summary>
    public static double Erfc(double x)
    {
        if (x < 0) return 2 - Erfc(-x);
        double t = 1 / (1 + 0.5 * x);
        double poly = -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        return t * Math.Exp(poly);
    }

    /// <summary>P(Z ≥ z) for a standard normal Z.</summary>
    public static double NormalUpper(double z) => 0.5 * Erfc(z / Math.Sqrt(2));

    /// <summary>P(|Z| ≥ |z|).</summary>
    public static double NormalTwoSided(double z) => Erfc(Math.Abs(z) / Math.Sqrt(2));
}
