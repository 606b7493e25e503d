global using Bdh.Autograd;
global using Bdh.Tensors;
