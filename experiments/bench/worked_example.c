/* The worked example's SGD loop in plain C, double precision: the reference
 * point for the fastest a single core can run the same arithmetic.
 *
 * A two-layer sigmoid network with one shared, untrained bias per layer and the
 * loss E = sum_k 1/2 (out_k - t_k)^2 on one example. Weights are stored one row
 * per neuron (the weights into that neuron), as jbp stores them. The sizes come
 * from -DN_IN, -DN_HIDDEN and -DN_OUT so the compiler treats them as constants.
 */
#include <math.h>

void train_worked_example(double *w1, double *w2, const double *x,
                          const double *t, double b1, double b2, double rate,
                          long steps, double *losses) {
  double h[N_HIDDEN], out[N_OUT], delta_out[N_OUT], delta_hidden[N_HIDDEN];
  for (long step = 0; step < steps; ++step) {
    for (int j = 0; j < N_HIDDEN; ++j) {
      double net = b1;
      for (int k = 0; k < N_IN; ++k) net += w1[j * N_IN + k] * x[k];
      h[j] = 1.0 / (1.0 + exp(-net));
    }

    double loss = 0.0;
    for (int j = 0; j < N_OUT; ++j) {
      double net = b2;
      for (int k = 0; k < N_HIDDEN; ++k) net += w2[j * N_HIDDEN + k] * h[k];
      out[j] = 1.0 / (1.0 + exp(-net));
      double error = out[j] - t[j];
      loss += 0.5 * error * error;
      delta_out[j] = error * out[j] * (1.0 - out[j]);
    }
    losses[step] = loss;

    for (int k = 0; k < N_HIDDEN; ++k) {
      double back = 0.0;
      for (int j = 0; j < N_OUT; ++j) back += delta_out[j] * w2[j * N_HIDDEN + k];
      delta_hidden[k] = back * h[k] * (1.0 - h[k]);
    }

    for (int j = 0; j < N_OUT; ++j)
      for (int k = 0; k < N_HIDDEN; ++k)
        w2[j * N_HIDDEN + k] -= rate * delta_out[j] * h[k];
    for (int j = 0; j < N_HIDDEN; ++j)
      for (int k = 0; k < N_IN; ++k)
        w1[j * N_IN + k] -= rate * delta_hidden[j] * x[k];
  }
}

/* The sigmoid alone, on an array of n values, applied steps times in place: the
 * share of a step that the exponential costs. */
void sigmoid_loop(double *values, long n, long steps) {
  for (long step = 0; step < steps; ++step)
    for (long i = 0; i < n; ++i) values[i] = 1.0 / (1.0 + exp(-values[i]));
}
