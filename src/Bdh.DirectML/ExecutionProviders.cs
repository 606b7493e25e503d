using Microsoft.ML.OnnxRuntime;

namespace Bdh.DirectML;

/// <summary>Which ONNX Runtime execution providers this build can use (DirectML on Windows builds, CPU everywhere).</summary>
public static class ExecutionProviders
{
    public const string DirectML = "DmlExecutionProvider";
    public const string Cpu = "CPUExecutionProvider";

    public static IReadOnlyList<string> Available() => OrtEnv.Instance().GetAvailableProviders();

    public static bool HasDirectML => Available().Contains(DirectML);
}
