import jax
import jax.numpy as jnp
import numpy as np
import optax

key = jax.random.PRNGKey(0)
X = jnp.asarray(np.load("features.npy"))
y = jnp.asarray(np.load("targets.npy"))
params = {"w": jax.random.normal(key, (X.shape[1],)) * 0.01, "b": 0.0}


def loss(p, xb, yb):
    return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)


optimizer = optax.adam(1e-2)
state = optimizer.init(params)


@jax.jit
def step(p, s, xb, yb):
    value, grads = jax.value_and_grad(loss)(p, xb, yb)
    updates, s = optimizer.update(grads, s)
    return optax.apply_updates(p, updates), s, value


for i in range(500):
    params, state, value = step(params, state, X, y)
    if i % 100 == 0:
        print(i, float(value))
np.save("weights.npy", np.asarray(params["w"]))
