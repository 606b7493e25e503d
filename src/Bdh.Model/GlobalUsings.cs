global using System.Numerics;
global using Bdh.Autograd;
global using Bdh.Tensors;
global using TP = System.Numerics.Tensors.TensorPrimitives;
