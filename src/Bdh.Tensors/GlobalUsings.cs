global using System.Numerics;
global using System.Runtime.CompilerServices;
global using TP = System.Numerics.Tensors.TensorPrimitives;
