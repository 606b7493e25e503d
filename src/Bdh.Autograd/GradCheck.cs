namespace Bdh.Autograd;

/// <summary>
/// Checks an op's (or a whole graph's) analytic gradients against central differences in double:
/// <c>(f(x + h) − f(x − h)) / 2h</c> for every element of every input.
/// </summary>
public static class GradCheck
{
    /// <summary>The finite-difference step h.</summary>
    public const double Step = 1e-6;

    /// <summary>The largest error the test suite accepts (see <c>Errors</c> for the measure).</summary>
    public const double Tolerance = 1e-6;

    /// <summary>
    /// For each input, <c>max |analytic − numeric| / max(max |numeric|, max |analytic|)</c>: the worst
    /// element error relative to the gradient's scale (0 when both gradients are exactly zero).
    /// <paramref name="f"/> must map the inputs to a scalar and be deterministic.
    /// </summary>
    public static double[] Errors(Func<Var<double>[], Var<double>> f, params Tensor<double>[] inputs)
    {
        var vars = inputs.Select(Var<double>.Parameter).ToArray();
        return Errors(() => f(vars), vars);
    }

    /// <summary>
    /// The same for a scalar built by <paramref name="f"/> from existing parameters (a whole model, say):
    /// each parameter's value is perturbed in place and restored.
    /// </summary>
    public static double[] Errors(Func<Var<double>> f, IReadOnlyList<Var<double>> parameters)
    {
        foreach (var p in parameters) p.ZeroGrad();
        var y = f();
        y.Backward();
        var analytic = parameters.Select(v => v.Grad?.Span.ToArray() ?? new double[v.Value.Length]).ToArray();
        y.ReleaseGraph();

        var errors = new double[parameters.Count];
        for (int i = 0; i < parameters.Count; i++)
        {
            var x = parameters[i].Value.Span;
            double worst = 0, scale = 0;
            for (int j = 0; j < x.Length; j++)
            {
                double original = x[j];
                x[j] = original + Step;
                double plus = Evaluate(f);
                x[j] = original - Step;
                double minus = Evaluate(f);
                x[j] = original;
                double numeric = (plus - minus) / (2 * Step);
                worst = Math.Max(worst, Math.Abs(analytic[i][j] - numeric));
                scale = Math.Max(scale, Math.Max(Math.Abs(numeric), Math.Abs(analytic[i][j])));
            }
            errors[i] = scale == 0 ? 0 : worst / scale;
        }
        return errors;
    }

    private static double Evaluate(Func<Var<double>> f)
    {
        using var _ = NoGrad.Scope();
        var y = f();
        double value = y.Value.Span[0];
        y.ReleaseGraph();
        return value;
    }
}
