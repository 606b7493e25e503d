namespace Bdh.Model.Experiments;

/// <summary>
/// The Mann-Whitney U test that group A's values are larger than group B's. U counts the pairs (a, b) with a > b, ties as
/// half; U/(n_A·n_B) is the probability that a random a beats a random b, the rank-biserial correlation is 2U/(n_A·n_B) − 1,
/// and the one-sided p-value comes from the normal approximation with the tie-corrected variance and a continuity correction.
/// </summary>
public readonly record struct MannWhitney(double U, double RankBiserial, double PValue)
{
    /// <summary>U from ranks: sort both groups together, give tied values their mean rank, U = R_A − n_A(n_A + 1)/2.</summary>
    /// <param name="values">A's values then B's; reordered in place.</param>
    /// <param name="fromA">scratch of the same length, reordered with them.</param>
    /// <param name="countA">how many of the values are A's.</param>
    public static MannWhitney Test(Span<float> values, Span<bool> fromA, int countA)
    {
        int n = values.Length, countB = n - countA;
        for (int i = 0; i < n; i++) fromA[i] = i < countA;
        values.Sort(fromA);
        double rankSumA = 0, ties = 0;
        for (int start = 0; start < n;)
        {
            int end = start + 1;
            while (end < n && values[end] == values[start]) end++;
            double rank = (start + 1 + end) / 2.0; // ranks start + 1 .. end share their mean
            for (int k = start; k < end; k++)
                if (fromA[k]) rankSumA += rank;
            double t = end - start;
            ties += t * t * t - t;
            start = end;
        }
        double u = rankSumA - countA * (countA + 1) / 2.0;
        double pairs = (double)countA * countB;
        double variance = pairs / 12 * (n + 1 - ties / ((double)n * (n - 1)));
        double p = variance > 0 ? Statistics.NormalUpper((u - pairs / 2 - 0.5) / Math.Sqrt(variance)) : 1; // all tied: no evidence
        return new MannWhitney(u, 2 * u / pairs - 1, Math.Min(p, 1));
    }
}
